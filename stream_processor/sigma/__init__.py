"""Sigma rules (SigmaHQ's detection format) converted into our jq rules: `stream-processor import-sigma`.

`importer` reads rule files with pySigma and converts each with `backend.JqBackend`; `jqexpr` holds the
jq shapes, `patterns` the regexes, `rulefile` writes the rule file. pySigma is the optional extra
`sigma`: this package file imports none of it, so the CLI works without it.
"""

from __future__ import annotations

DEFAULT_LICENSE = "DRL-1.1"
STDOUT_DESTINATION = "stdout"
INSTALL_HINT = "pip install 'stream-processor[sigma]' (pySigma)"
