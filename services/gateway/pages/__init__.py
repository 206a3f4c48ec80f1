"""Server-rendered pages of the sign-in flow (jinja2, autoescaped, no JavaScript)."""
