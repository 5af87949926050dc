"""The distribution client: reference grammar, credentials in Docker's config.json, the registry HTTP
API (OCI Distribution / Docker Registry v2), manifests, pull and push."""
