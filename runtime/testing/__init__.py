"""For test suites that embed pydock: the pytest plugin (`pytest -p pydock`) and the host leak check.

A front end: nothing in pydock's library imports it.
"""
