-- PEM certificates a service's https:// upstreams are verified against (NULL: the
-- system's roots).
ALTER TABLE services ADD COLUMN tls_ca_pem TEXT;
