-- When a service's calls go on to another upstream, as JSON (NULL: on a refused
-- connection, through every upstream).
ALTER TABLE services ADD COLUMN retry TEXT;
