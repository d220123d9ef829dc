-- A service's active health check, as JSON (NULL: none).
ALTER TABLE services ADD COLUMN health_check TEXT;
