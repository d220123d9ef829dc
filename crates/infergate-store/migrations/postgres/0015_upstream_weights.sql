-- The weight of each upstream of a service in balancing, as a JSON array of
-- numbers by upstream (NULL: all equal).
ALTER TABLE services ADD COLUMN upstream_weights TEXT;
