"""`neu-gateway openapi`: the gateway's OpenAPI description, as /openapi.json serves it, to
generate clients from or to check in beside them."""

from __future__ import annotations

import argparse
import dataclasses
import json

from gateway.cli.config_file import EXIT_CONFIG, EXIT_OK, load_or_report
from gateway.contract.openapi import Facts, build_document
from gateway.http.api_docs import facts_of, main_listener_url


def print_openapi(args: argparse.Namespace) -> int:
    """Without a config, what any gateway with the defaults checks, served at the default
    address; with one, what that gateway checks, at its listen address."""
    facts = Facts()
    if args.config is not None:
        config = load_or_report(args.config)
        if config is None:
            return EXIT_CONFIG
        facts = facts_of(config, main_listener_url(config))
    if args.server is not None:
        facts = dataclasses.replace(facts, server_url=args.server)
    print(json.dumps(build_document(facts), indent=2))
    return EXIT_OK
