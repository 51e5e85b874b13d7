"""Pipeline definitions (one module per pipeline), their placement, compilation and local runs."""
