"""google-auth's Application Default Credentials on a "GCE VM": with GCE_METADATA_HOST and
GCE_METADATA_IP pointing at the stsbridge agent, google.auth.default() detects the metadata server,
then refresh() fetches the service account's email and token from it."""

import json

import google.auth
import google.auth.transport.requests

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def main() -> None:
    credentials, project = google.auth.default(scopes=[SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())
    print(
        json.dumps(
            {
                "type": type(credentials).__module__ + "." + type(credentials).__name__,
                "project": project,
                "email": credentials.service_account_email,
                "token": credentials.token,
                "expiry": credentials.expiry.isoformat() if credentials.expiry else None,
            }
        )
    )


if __name__ == "__main__":
    main()
