"""`pydock serve`: the Docker Engine API (v1.24-1.44) over the Runtime, the same service layer the CLI uses.

    httpd.py       HTTP: listeners, request parsing, chunked bodies, JSON/streamed responses, hijack
    router.py      the route table, dispatch, and pydock errors -> HTTP statuses
    system.py      routes: _ping, version, info
    containers.py  routes: containers (create ... commit): decode, call the Runtime, encode
    images.py      routes: images (list, inspect, history, tag, delete, import, pull)
    decode.py      Docker's request values -> CreateOptions, references, filters, query values
    models.py      pydock's records -> Docker's JSON shapes, and each shape per API version (GATES)
    unsupported.py Docker endpoints pydock lacks (swarm, plugins, search, ...): one clear error each
    streams.py     log records -> Docker's stream frames (logs, attach)
    services.py    what routes call: a Runtime per request thread, the starter
    starter.py     single-threaded helper processes that start containers (the server never forks)

A front end: nothing in pydock imports it but `cli/serve.py`.
"""
