-- How a service spreads its calls over its upstreams. Services made before keep round
-- robin; new ones are created least_outstanding unless they say otherwise.
ALTER TABLE services ADD COLUMN load_balancing TEXT NOT NULL DEFAULT 'round_robin';
