"""`pydock serve`: the Docker Engine API, as httpd (HTTP parsing, hijack, streaming) -> routes
(Docker's JSON in and out) -> the Runtime, the same service layer the CLI uses.

A front end: nothing in pydock imports it but `cli/serve.py`.
"""
