#!/usr/bin/env python3
"""Runs every PromQL expression of a Grafana dashboard against a Prometheus server.

    python3 check_queries.py http://127.0.0.1:9090 grafana/keel-dashboard.json [--require-data]
    python3 check_queries.py --list grafana/keel-dashboard.json   # the expressions, as JSON

Every `targets[].expr` of every panel (rows' nested panels included) is taken, Grafana's
variables are replaced as a test would see them ($__rate_interval -> 1m, $job -> keel,
$instance -> .*; change them with --var NAME=VALUE), and the result is sent to
/api/v1/query. One line per expression: status, number of series, panel, expression.

Exit status: 0 when every query succeeds; 1 when one fails (a syntax error, an unknown
variable left in the text, an unreachable server), or with --require-data when one returns
no series; 2 on bad usage. Python standard library only.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "job": "keel",
    "instance": ".*",
}

# $name, ${name} and ${name:format}; PromQL itself has no `$` outside string literals, where a
# regex anchor is followed by a quote or a bracket, never by a letter.
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def panels(node):
    """Every panel of a dashboard, including those folded into collapsed rows."""
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions(dashboard):
    """(panel title, refId, expr) for every Prometheus target with an expression."""
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr is not None:
                found.append((panel.get("title", "?"), target.get("refId", "?"), expr))
    return found


def substitute(expr, variables):
    unknown = []

    def replace(match):
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        unknown.append(name)
        return match.group(0)

    return VARIABLE.sub(replace, expr), unknown


def query(url, expr, timeout):
    """Returns (status, series count, message)."""
    body = urllib.parse.urlencode({"query": expr}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/query",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        # Prometheus answers a bad query with 400 and a JSON error body.
        try:
            answer = json.load(error)
        except ValueError:
            return "error", 0, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return "error", 0, str(error)
    if answer.get("status") != "success":
        return "error", 0, f"{answer.get('errorType', '')}: {answer.get('error', answer)}"
    data = answer.get("data", {})
    result = data.get("result", [])
    count = len(result) if data.get("resultType") in ("vector", "matrix") else 1
    warnings = "; ".join(answer.get("warnings", []))
    return "success", count, warnings


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Run a Grafana dashboard's PromQL against Prometheus.")
    parser.add_argument("url", nargs="?", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("dashboard", help="path of the dashboard JSON")
    parser.add_argument("--require-data", action="store_true",
                        help="also fail when an expression returns no series")
    parser.add_argument("--list", action="store_true",
                        help="print the expressions (raw and substituted) as JSON and exit")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="value for a dashboard variable (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per query")
    arguments = parser.parse_args(argv)
    if not arguments.list and not arguments.url:
        parser.error("the Prometheus URL is required unless --list is given")
    variables = dict(DEFAULT_VARIABLES)
    for item in arguments.var:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--var takes NAME=VALUE, not {item!r}")
        variables[name.lstrip("$")] = value
    return arguments, variables


def main(argv):
    arguments, variables = parse_arguments(argv)
    try:
        with open(arguments.dashboard, encoding="utf-8") as file:
            dashboard = json.load(file)
    except (OSError, ValueError) as error:
        print(f"cannot read {arguments.dashboard}: {error}", file=sys.stderr)
        return 2
    found = expressions(dashboard)
    if not found:
        print(f"no expressions in {arguments.dashboard}", file=sys.stderr)
        return 1

    if arguments.list:
        listing = []
        for title, ref_id, expr in found:
            substituted, unknown = substitute(expr, variables)
            listing.append({"panel": title, "refId": ref_id, "expr": expr,
                            "query": substituted, "unknown_variables": unknown})
        json.dump(listing, sys.stdout, indent=2)
        print()
        return 1 if any(entry["unknown_variables"] for entry in listing) else 0

    failures = 0
    empty = 0
    for title, ref_id, expr in found:
        substituted, unknown = substitute(expr, variables)
        if unknown:
            status, count, message = "error", 0, "unknown variable(s): " + ", ".join(unknown)
        else:
            status, count, message = query(arguments.url, substituted, arguments.timeout)
        if status != "success":
            failures += 1
            verdict = "FAIL"
        elif count == 0:
            empty += 1
            verdict = "EMPTY" if arguments.require_data else "ok"
        else:
            verdict = "ok"
        print(f"{verdict:5} {status:7} {count:3}  [{title} / {ref_id}]  {substituted}")
        if message:
            print(f"      {message}")

    print(f"{len(found)} expressions: {len(found) - failures} succeeded, {failures} failed, "
          f"{empty} returned no series")
    if failures or (arguments.require_data and empty):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
