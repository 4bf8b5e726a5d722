-- Why a campaign was paused when Herald paused it itself (its sender cannot send, for example);
-- NULL when a person paused it, and cleared when it resumes.
ALTER TABLE campaigns ADD COLUMN paused_reason TEXT;
