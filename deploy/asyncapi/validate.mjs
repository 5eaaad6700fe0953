// Validates an AsyncAPI document with the official parser; exit 1 on any error.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs ASYNCAPI.json");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"));
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const level = d.severity === DiagnosticSeverity.Error ? "error" : "warning";
  console.log(`${level}: ${d.path.join(".") || "document"}: ${d.message}`);
}
if (!document || errors.length > 0) {
  console.error(`${path}: not a valid AsyncAPI document (${errors.length} errors)`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.messages().length} messages`);
