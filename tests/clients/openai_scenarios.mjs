// Runs gated `openai` calls through the Node.js wrapper, as tests/clients/node/test_openai_wrapper.py lists
// them, and prints what each call returned or threw and its outcome, one JSON document on stdout.
//
//   node openai_scenarios.mjs <clients/node> <sidecar target> <fake provider base URL> '<cases JSON>'
//
// The `openai` package is the client package's own dev dependency, resolved from its folder.

import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [nodeDir, target, fakeUrl, casesJson] = process.argv.slice(2);
const require = createRequire(path.join(nodeDir, "package.json"));
const { default: OpenAI } = await import(pathToFileURL(require.resolve("openai")).href);
const tollgateModule = await import(pathToFileURL(path.join(nodeDir, "src", "index.js")).href);
const { TollgateClient, gateOpenAI } = tollgateModule;

const MESSAGES = [
  { role: "system", content: "Extract the invoice total as JSON." },
  { role: "user", content: "Invoice 17 from ACME GmbH: total 42.50 EUR, due in 30 days." },
];

const sdk = (provider) => new OpenAI({ apiKey: "sk-test", baseURL: `${fakeUrl}/${provider}/v1`, maxRetries: 0 });
const json = (text) => {
  try {
    JSON.parse(text);
    return "";
  } catch {
    return "invalid json";
  }
};
const chatText = (r) => r.choices?.[0]?.message?.content ?? "";
const responsesText = (r) => r.output_text ?? "";
const plainOutcome = (o) =>
  o && {
    stream: o.stream,
    chargedNanos: String(o.chargedNanos),
    attempts: o.attempts.map((a) => ({ ...a, chargedNanos: String(a.chargedNanos) })),
  };

const tollgate = new TollgateClient(target, { timeoutMs: 5000 });
const results = [];
for (const c of JSON.parse(casesJson)) {
  const outcomes = [];
  const text = c.api === "responses" ? responsesText : chatText;
  const gated = gateOpenAI(Object.fromEntries(c.providers.map((p) => [p, sdk(p)])), {
    tollgate,
    scope: { org: c.org, team: "search", user: "alice" },
    check: c.check ? (r) => json(text(r)) : undefined,
    onOutcome: (o) => outcomes.push(o),
  });
  const params =
    c.api === "responses"
      ? { input: MESSAGES, max_output_tokens: 256 }
      : { messages: MESSAGES, max_tokens: 256 };
  if (c.model) params.model = c.model;
  if (c.stream) params.stream = true;
  params.tollgate = { taskType: c.taskType ?? "extract" };
  const requestOptions = { headers: { "x-fake-scenario": c.scenario ?? "ok" } };
  const result = { name: c.name, org: c.org };
  try {
    const create = c.api === "responses" ? gated.responses.create : gated.chat.completions.create;
    const answer = await create(params, requestOptions);
    if (c.stream) {
      const pieces = [];
      try {
        for await (const item of answer) {
          if (c.api === "responses") {
            if (item.type === "response.output_text.delta") pieces.push(item.delta);
          } else {
            pieces.push(item.choices?.[0]?.delta?.content ?? "");
          }
          if (c.breakAfter && pieces.filter(Boolean).length >= c.breakAfter) break;
        }
      } catch (error) {
        result.streamError = error.constructor.name;
      }
      result.text = pieces.join("");
      result.outcome = plainOutcome(await answer.outcome);
    } else {
      result.text = text(answer);
    }
  } catch (error) {
    result.error = error.name === "Error" ? error.constructor.name : error.name;
    result.message = String(error.message ?? error);
    if (error.outcome) result.outcome = plainOutcome(error.outcome);
  }
  result.outcomes = outcomes.map(plainOutcome);
  results.push(result);
}
tollgate.close();
console.log(JSON.stringify(results));
