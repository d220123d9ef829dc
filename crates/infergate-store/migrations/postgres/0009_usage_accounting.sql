-- Whether a service's model calls are read for token usage (on unless switched off).
ALTER TABLE services ADD COLUMN usage_accounting BOOLEAN NOT NULL DEFAULT TRUE;
