"""The gateway's HTTP API: operation declarations (operation.py), one module per resource, the
endpoint wrapper that runs a declaration (endpoint.py) and the routes built from them."""
