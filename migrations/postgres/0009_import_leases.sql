-- Which process runs an import, until when. A job and the sweep that finds imports whose job
-- was lost (or whose process died mid-file) both take the lease first, so one file is never
-- imported by two runs at once; a run renews it with every batch it commits.
ALTER TABLE contact_imports ADD COLUMN lease_owner TEXT;
ALTER TABLE contact_imports ADD COLUMN lease_expires_at TIMESTAMPTZ;
