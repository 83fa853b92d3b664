// The graphql-http audit suite (the GraphQL over HTTP spec's reference audits) against a
// running server.
//
//   node audit.cjs http://127.0.0.1:PORT/graphql
//
// Prints one JSON line per audit ({ id, name, status, reason }) and a last line with the
// counts; exits 1 if any MUST or SHOULD audit is not "ok".
"use strict";
const { serverAudits } = require("graphql-http");

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error("usage: node audit.cjs URL");
  const counts = { ok: 0, failed: 0, may: 0 };
  for (const audit of serverAudits({ url })) {
    const result = await audit.fn();
    const level = audit.name.split(" ")[0];
    const line = { id: result.id, name: result.name, status: result.status };
    if (result.status !== "ok") {
      line.reason = result.reason;
      try {
        line.body = (await result.response.text()).slice(0, 300);
        line.httpStatus = result.response.status;
      } catch (_) {
        // the body was read by the audit already
      }
    }
    console.log(JSON.stringify(line));
    if (level === "MAY") counts.may++;
    else if (result.status === "ok") counts.ok++;
    else counts.failed++;
  }
  console.log(JSON.stringify(counts));
  process.exit(counts.failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
