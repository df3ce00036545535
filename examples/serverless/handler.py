"""A function that uses AWS with no credential code at all.

boto3's default credential chain finds AWS_CONTAINER_CREDENTIALS_FULL_URI and
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE in the environment (exported from the stsbridge agent) and
fetches short-lived credentials from the agent, refreshing them before they expire. Nothing here
knows about stsbridge.
"""

import json
import os

import boto3


def handler(event, context):
    sts = boto3.client("sts", endpoint_url=os.environ.get("STS_ENDPOINT"))
    identity = sts.get_caller_identity()
    return {"statusCode": 200, "body": json.dumps({"running_as": identity["Arn"]})}


if __name__ == "__main__":
    print(handler({}, None))
