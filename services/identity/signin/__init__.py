"""Signing in: from a proven identity (password, SAML assertion, OIDC ID token) to a session."""
