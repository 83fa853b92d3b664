// graphql-js (the reference implementation) executes a corpus of documents over the
// schema our introspection describes, with resolvers that read the very rows our views
// return; the Rust side compares its endpoint's answers with these, key order included.
//
//   node differential.cjs introspection.json rows.json cases.json
//
// rows.json: the view's documents in its default order. cases.json: [{ query, variables }].
// Prints one JSON line per case: graphql-js's response (`JSON.stringify` keeps the order
// graphql-js built: the selection's).
"use strict";
const fs = require("fs");
const { buildClientSchema, parse, execute, validate } = require("graphql");

const introspection = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const rows = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const cases = JSON.parse(fs.readFileSync(process.argv[4], "utf8"));
const schema = buildClientSchema(introspection.data ?? introspection);

const snake = (s) => s.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
const page = (list, args) => {
  const from = args.offset ?? 0;
  return list.slice(from, args.limit == null ? undefined : from + args.limit);
};
// The root fields, as the views answer them (default ordering: the rows' order).
const roots = {
  orders: (args) => page(rows.filter((r) => args.customerId == null || r.customer_id === args.customerId), args),
  ordersIn: (args) => rows.filter((r) => args.status.includes(r.status)),
  order: (args) => rows.find((r) => r.id === args.id) ?? null,
};
const fieldResolver = (source, args, _ctx, info) =>
  info.parentType.name === "Query" ? roots[info.fieldName](args) : source[snake(info.fieldName)];

for (const { query, variables } of cases) {
  const document = parse(query);
  const errors = validate(schema, document);
  const result = errors.length ? { errors: errors.map((e) => e.message) } : execute({ schema, document, variableValues: variables, fieldResolver });
  console.log(JSON.stringify(result));
}
