"""PostgreSQL access: clusters and placement, per-tenant pools, migrations, provisioning."""
