// Usage from provider responses, and money formatting.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { formatUsd, NANOS_PER_USD, usageFromAnthropic, usageFromOpenAI } from "../src/index.js";

/** The same response as SDK-style class instances instead of plain objects. */
function asInstances(value) {
  if (value === null || typeof value !== "object") return value;
  class SdkObject {}
  return Object.assign(
    new SdkObject(),
    Object.fromEntries(Object.entries(value).map(([key, item]) => [key, asInstances(item)])),
  );
}

const SHAPES = [
  ["plain JSON", (value) => value],
  ["SDK objects", asInstances],
];

const CHAT_COMPLETION = {
  id: "chatcmpl-1",
  object: "chat.completion",
  usage: {
    prompt_tokens: 1200,
    completion_tokens: 300,
    total_tokens: 1500,
    prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 128, audio_tokens: 0 },
  },
};
const RESPONSES_API = {
  id: "resp_1",
  object: "response",
  usage: {
    input_tokens: 900,
    input_tokens_details: { cached_tokens: 512 },
    output_tokens: 450,
    output_tokens_details: { reasoning_tokens: 400 },
    total_tokens: 1350,
  },
};
const ANTHROPIC_MESSAGE = {
  id: "msg_1",
  type: "message",
  usage: { input_tokens: 50, cache_creation_input_tokens: 2000, cache_read_input_tokens: 8000, output_tokens: 700 },
};

describe("usageFromOpenAI", () => {
  for (const [shape, make] of SHAPES) {
    it(`reads Chat Completions usage from ${shape}, moving reasoning out of the output`, () => {
      assert.deepEqual(usageFromOpenAI(make(CHAT_COMPLETION)), {
        inputTokens: 1200,
        cachedInputTokens: 1024,
        outputTokens: 172,
        reasoningTokens: 128,
      });
    });

    it(`reads Responses API usage from ${shape}`, () => {
      assert.deepEqual(usageFromOpenAI(make(RESPONSES_API)), {
        inputTokens: 900,
        cachedInputTokens: 512,
        outputTokens: 50,
        reasoningTokens: 400,
      });
    });

    it(`counts missing and null fields as 0 (${shape})`, () => {
      const chat = { usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: null } };
      assert.deepEqual(usageFromOpenAI(make(chat)), {
        inputTokens: 10,
        cachedInputTokens: 0,
        outputTokens: 5,
        reasoningTokens: 0,
      });
      const responses = { usage: { input_tokens: 7, output_tokens: null, output_tokens_details: { reasoning_tokens: null } } };
      assert.deepEqual(usageFromOpenAI(make(responses)), {
        inputTokens: 7,
        cachedInputTokens: 0,
        outputTokens: 0,
        reasoningTokens: 0,
      });
    });
  }

  it("keeps inconsistent details within a valid usage", () => {
    const odd = {
      usage: {
        prompt_tokens: 10,
        prompt_tokens_details: { cached_tokens: 50 },
        completion_tokens: 3,
        completion_tokens_details: { reasoning_tokens: 8 },
      },
    };
    assert.deepEqual(usageFromOpenAI(odd), { inputTokens: 10, cachedInputTokens: 10, outputTokens: 0, reasoningTokens: 8 });
  });

  it("refuses a count that is not an integer", () => {
    assert.throws(() => usageFromOpenAI({ usage: { prompt_tokens: "12" } }), { name: "TypeError", message: /prompt_tokens/ });
    assert.throws(() => usageFromOpenAI({ usage: { input_tokens: 1.5 } }), { name: "TypeError", message: /input_tokens/ });
  });
});

describe("usageFromAnthropic", () => {
  for (const [shape, make] of SHAPES) {
    it(`adds cache reads and writes to the input (${shape})`, () => {
      assert.deepEqual(usageFromAnthropic(make(ANTHROPIC_MESSAGE)), {
        inputTokens: 10_050,
        cachedInputTokens: 8000,
        outputTokens: 700,
        reasoningTokens: 0,
      });
    });
  }

  it("counts missing and null fields as 0", () => {
    const message = { usage: { input_tokens: 20, output_tokens: 4, cache_read_input_tokens: null } };
    assert.deepEqual(usageFromAnthropic(message), { inputTokens: 20, cachedInputTokens: 0, outputTokens: 4, reasoningTokens: 0 });
  });
});

describe("a response without usage", () => {
  for (const read of [usageFromOpenAI, usageFromAnthropic]) {
    for (const response of [{}, { usage: null }, { id: "x" }, asInstances({ usage: null }), null, "text"]) {
      it(`is refused by ${read.name}: ${JSON.stringify(response)}`, () => {
        assert.throws(() => read(response), { name: "TypeError", message: /no usage/ });
      });
    }
  }
});

describe("formatUsd", () => {
  const cases = [
    [0n, "$0.00"],
    [1n, "$0.000000001"],
    [1_300_000n, "$0.0013"],
    [500_000_000n, "$0.50"],
    [1_234_567_000n, "$1.234567"],
    [12_345n * NANOS_PER_USD, "$12,345.00"],
    [-2_500_000_000n, "-$2.50"],
    [9_223_372_036_854_775_807n, "$9,223,372,036.854775807"],
    [2_500_000_000, "$2.50"],
  ];
  for (const [nanos, text] of cases) {
    it(`renders ${nanos} as ${text}`, () => assert.equal(formatUsd(nanos), text));
  }

  it("refuses fractions and strings", () => {
    assert.throws(() => formatUsd(0.5), TypeError);
    assert.throws(() => formatUsd("1000"), TypeError);
  });
});
