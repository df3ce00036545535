"""azure-identity's ManagedIdentityCredential in an "App Service": IDENTITY_ENDPOINT and
IDENTITY_HEADER point at the stsbridge agent."""

import json
import sys

from azure.identity import ManagedIdentityCredential


def main() -> None:
    scope = sys.argv[1]
    token = ManagedIdentityCredential().get_token(scope)
    print(json.dumps({"token": token.token, "expires_on": token.expires_on}))


if __name__ == "__main__":
    main()
