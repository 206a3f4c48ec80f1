"""Single sign-on per tenant: SAML 2.0 and OIDC providers, verified domains, collaborators."""
