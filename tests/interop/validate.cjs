// graphql-js (the reference implementation) reads our introspection result, builds a
// client schema from it, and validates queries against it.
//
//   node validate.cjs introspection.json queries.json
//
// queries.json: [{ "query": "...", "valid": true|false }]. Prints one line per query
// and exits 1 if graphql-js disagrees with the expected validity.
"use strict";
const fs = require("fs");
const { buildClientSchema, assertValidSchema, parse, validate, printSchema, getIntrospectionQuery } = require("graphql");

const introspection = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const queries = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const schema = buildClientSchema(introspection.data ?? introspection);
assertValidSchema(schema);
let failed = 0;
for (const { query, valid } of queries) {
  let errors;
  try {
    errors = validate(schema, parse(query)).map((e) => e.message);
  } catch (e) {
    errors = [String(e.message)];
  }
  const ok = (errors.length === 0) === valid;
  if (!ok) failed++;
  console.log(JSON.stringify({ query, valid, ok, errors }));
}
// The introspection query graphql-js itself sends must validate too.
const own = validate(schema, parse(getIntrospectionQuery()));
if (own.length) {
  failed++;
  console.log(JSON.stringify({ query: "getIntrospectionQuery()", ok: false, errors: own.map((e) => e.message) }));
}
console.log(JSON.stringify({ types: Object.keys(schema.getTypeMap()).filter((n) => !n.startsWith("__")).sort(), sdlLines: printSchema(schema).split("\n").length, failed }));
process.exit(failed ? 1 : 0);
