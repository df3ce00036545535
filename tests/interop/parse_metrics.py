"""Reads a Prometheus text exposition on stdin with the Prometheus project's own parser and prints
every sample as JSON: {"name{label=value,...}": value}."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    samples = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
