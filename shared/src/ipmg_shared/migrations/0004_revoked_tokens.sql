-- Token ids refused by this service; written by `ipmg token revoke` as the administrator.
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL DEFAULT ''
);
