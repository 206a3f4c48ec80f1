"""SAML 2.0 service provider per tenant (python3-saml), with the checks it leaves to us.

``rules``: the tenant's IdP configuration, validated, and python3-saml's strict settings
built from it and the tenant's canonical origin. ``metadata``: IdP metadata imported from
XML or a URL, and our SP metadata. ``acs``: a posted Response, from form value to the
``ExternalIdentity`` it proves (hostile XML refused first, python3-saml's validation, then
ours: exact recipient and destination, a required audience, InResponseTo taken from the
signed assertion, a bounded lifetime). ``store``: configuration, the SP key pair, issued
request ids and the replay cache, in the tenant's database. ``api``: the gRPC entrypoints.
"""
