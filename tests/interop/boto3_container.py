"""boto3 with container credentials: the credential chain finds AWS_CONTAINER_CREDENTIALS_FULL_URI
(and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) in the environment, as in an ECS task or behind the
stsbridge agent. Prints which provider supplied the credentials and who STS (moto) says we are."""

import json
import sys

import boto3


def main() -> None:
    sts_endpoint = sys.argv[1]
    session = boto3.Session(region_name="us-east-1")
    credentials = session.get_credentials()
    identity = session.client("sts", endpoint_url=sts_endpoint).get_caller_identity()
    print(json.dumps({"method": credentials.method, "arn": identity["Arn"]}))


if __name__ == "__main__":
    main()
