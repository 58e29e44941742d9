"""Every funnelhub service in docker-compose.yml gets configuration funnelhub accepts.

Loads each service's environment and runs `funnelhub config` with it: an unknown or
misspelled FUNNELHUB_* key fails (the config denies unknown fields), and each value must
show up in the effective configuration.

usage: check_env.py PATH_TO_FUNNELHUB_BINARY
"""
import os
import subprocess
import sys

import yaml

binary = os.path.abspath(sys.argv[1])
with open("docker-compose.yml") as f:
    compose = yaml.safe_load(f)

checked = 0
for name, service in compose["services"].items():
    if service.get("image") != "funnelhub:local":
        continue
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    run_env = {"PATH": os.environ["PATH"], **env}
    # The config file is mounted into the container: use the host file it comes from.
    if "FUNNELHUB_CONFIG" in env:
        mounts = dict(reversed(v.split(":")[:2]) for v in service.get("volumes", []))
        host = mounts.get(env["FUNNELHUB_CONFIG"])
        if host is None:
            sys.exit(f"{name}: FUNNELHUB_CONFIG={env['FUNNELHUB_CONFIG']} is not a mounted file")
        run_env["FUNNELHUB_CONFIG"] = os.path.abspath(host)
    result = subprocess.run([binary, "config"], env=run_env, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        sys.exit(f"{name}: funnelhub refuses its configuration: {result.stderr.strip()}")
    for key, value in env.items():
        if key.startswith("FUNNELHUB_") and key != "FUNNELHUB_CONFIG" and value not in result.stdout:
            sys.exit(f"{name}: {key}={value} does not appear in the effective configuration")
    checked += 1

if checked == 0:
    sys.exit("no funnelhub service found in docker-compose.yml")
print(f"docker-compose: {checked} funnelhub service(s) configured correctly")
