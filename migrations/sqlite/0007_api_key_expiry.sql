-- A key may be given an end: refused from that instant on, like a revoked one.
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
