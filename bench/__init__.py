"""The linkgate benchmark: `python -m bench` (or `make bench`).

It starts the service the way production runs it, next to a bare ASGI app
(the ceiling) under the same server settings, drives both with wrk, checks a
sample of answers, and writes bench/RESULTS.md. See bench/run.py for the steps.
"""
