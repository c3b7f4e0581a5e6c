"""Print the package's runtime dependencies, every one pinned to the version installed here.

`make lambda-pins` writes them to infra/lambda/requirements.txt: the Lambda package is then built from exactly
the versions `make test` ran (jq above all: its libjq is what the rules run on), not whatever pip resolves
for Lambda's platform that day.
"""

from __future__ import annotations

import importlib.metadata
import sys

from packaging.requirements import Requirement

DISTRIBUTION = "cloudtrail-stream-processor"


def closure(name: str, found: dict[str, str]) -> None:
    key = name.lower().replace("_", "-")
    if key in found:
        return
    distribution = importlib.metadata.distribution(name)
    found[key] = distribution.version
    for text in distribution.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            closure(requirement.name, found)


def main() -> int:
    found: dict[str, str] = {}
    closure(DISTRIBUTION, found)
    del found[DISTRIBUTION]
    print("# The Lambda package's dependencies at the versions `make test` ran; `make lambda-pins` rewrites this.")
    for name, version in sorted(found.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
