"""Mint an API key for `sophia serve`: shown once, stored only as its SHA-256 hash.

python -m sophia.apikeys team-a      # prints a new key and the line for sophia.toml
"""

from __future__ import annotations

import sys

from sophia.config.apikeys import KEY_ID, hash_key, new_key


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not KEY_ID.fullmatch(args[0]):
        print("usage: python -m sophia.apikeys ID   (ID: letters, digits, . _ @ : -)", file=sys.stderr)
        return 2
    key = new_key()
    print(f"key for {args[0]} (shown once; give it to the client, keep it out of files):\n  {key}\n")
    print("add to the [server] section of sophia.toml:")
    print(f'  api_keys = [{{ id = "{args[0]}", sha256 = "{hash_key(key)}" }}]')
    return 0


if __name__ == "__main__":
    sys.exit(main())
