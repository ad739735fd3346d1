"""Storage: SQL models and repository (the truth), the Redis cache, migrations."""
