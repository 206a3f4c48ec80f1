"""Identity's domain rules: pure Python, no transport or database imports."""
