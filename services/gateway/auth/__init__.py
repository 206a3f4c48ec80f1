"""Who is calling: API tokens (bearer.py), session cookies (session.py), CSRF (csrf.py)."""
