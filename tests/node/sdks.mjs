// The Node.js SDKs, each through its default credential chain, with only the environment the
// stsbridge agent printed: the AWS SDK v3 (fromNodeProviderChain finds the container credentials
// variables), google-auth-library (Application Default Credentials detect the agent as the GCE
// metadata server) and @azure/identity (DefaultAzureCredential finds the App Service managed
// identity). Prints one JSON line.
//
//   node sdks.mjs aws STS_ENDPOINT | gcp | azure SCOPE
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { GoogleAuth } from "google-auth-library";
import { DefaultAzureCredential } from "@azure/identity";

const SCOPE = "https://www.googleapis.com/auth/cloud-platform";

async function aws(endpoint) {
  const credentials = fromNodeProviderChain();
  const resolved = await credentials();
  const sts = new STSClient({ region: "us-east-1", endpoint, credentials });
  const identity = await sts.send(new GetCallerIdentityCommand({}));
  return {
    arn: identity.Arn,
    expiration: resolved.expiration ? resolved.expiration.toISOString() : null,
  };
}

async function gcp() {
  const auth = new GoogleAuth({ scopes: [SCOPE] });
  const client = await auth.getClient();
  const token = await client.getAccessToken();
  return {
    type: client.constructor.name,
    project: await auth.getProjectId(),
    email: (await auth.getCredentials()).client_email,
    token: token.token,
  };
}

async function azure(scope) {
  const token = await new DefaultAzureCredential().getToken(scope);
  return { token: token.token, expires_on: Math.floor(token.expiresOnTimestamp / 1000) };
}

const [cloud, arg] = process.argv.slice(2);
const run = { aws, gcp, azure }[cloud];
if (!run) {
  console.error("usage: node sdks.mjs aws STS_ENDPOINT | gcp | azure SCOPE");
  process.exit(64);
}
try {
  console.log(JSON.stringify(await run(arg)));
} catch (e) {
  console.error(`${cloud}: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
