"""The benchmark of dashsel: suites (digits5, spam), baselines, the study harness, reports.

A second top-level package beside the library :mod:`dashsel`, shipped in the same wheel; its
third-party dependencies come with ``pip install 'dashsel[bench]'``. The library never
imports it (only the ``dashsel demo``, ``dashsel bench`` and ``dashsel data`` commands do).
"""
