"""Development-only endpoints (the dev issuer's token and JWKS, the playground); never in production."""
