// The limits of a key or a team: one summary line, and the form fields and their parsing that both dialogs share.

import { formatUsd } from "./format";
import type { BudgetPeriod, Limits } from "./types";
import type { Field, FormValues } from "./ui";

/** Limits that usage counts against (the others, allowed models and the max_tokens cap, have no usage). */
export function hasUsageLimits(l: Limits): boolean {
  return l.rpm !== null || l.tpm !== null || l.max_parallel !== null || l.budget_usd !== null;
}

/** "60 req/min, $10.00/day, models gpt-4o*", or "" without any limit. */
export function limitsSummary(l: Limits): string {
  const parts: string[] = [];
  if (l.rpm !== null) parts.push(`${l.rpm} req/min`);
  if (l.tpm !== null) parts.push(`${l.tpm.toLocaleString("en-US")} tok/min`);
  if (l.max_parallel !== null) parts.push(`${l.max_parallel} in flight`);
  if (l.budget_usd !== null) parts.push(`${formatUsd(l.budget_usd)}/${l.budget_period ?? "?"}`);
  if (l.allowed_models.length) parts.push(`models ${l.allowed_models.join(", ")}`);
  if (l.max_tokens_cap !== null) parts.push(`max_tokens ≤ ${l.max_tokens_cap}`);
  return parts.join(", ");
}

/** The fields of a limits form, filled with the current limits. */
export function limitFields(l: Limits): Field[] {
  const num = (v: number | null): string => v?.toString() ?? "";
  return [
    { name: "rpm", label: "Requests per minute", type: "number", value: num(l.rpm), hint: "empty = no limit" },
    { name: "tpm", label: "Tokens per minute", type: "number", value: num(l.tpm) },
    { name: "max_parallel", label: "Requests in flight", type: "number", value: num(l.max_parallel) },
    { name: "budget_usd", label: "Budget (USD)", value: l.budget_usd ?? "" },
    {
      name: "budget_period",
      label: "Budget period",
      type: "select",
      value: l.budget_period ?? "month",
      options: [
        { value: "day", label: "per day" },
        { value: "week", label: "per week (from Monday)" },
        { value: "month", label: "per month" },
        { value: "total", label: "in total (never resets)" },
      ],
    },
    {
      name: "allowed_models",
      label: "Allowed models",
      value: l.allowed_models.join(", "),
      hint: "patterns, comma-separated (gpt-4o*, anthropic/*); empty = all",
    },
    { name: "max_tokens_cap", label: "Largest max_tokens", type: "number", value: num(l.max_tokens_cap) },
  ];
}

// Empty or 0 = no limit.
function wholeOrNull(v: string | boolean | undefined): number | null {
  const s = String(v ?? "").trim();
  if (!s) return null;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a whole number: ${s}`);
  return n === 0 ? null : n;
}

function usdOrNull(v: string | boolean | undefined): string | null {
  const s = String(v ?? "").trim();
  if (!s) return null;
  if (!/^\d+(\.\d+)?$/.test(s)) throw new Error(`not an amount in USD: ${s}`);
  return Number(s) === 0 ? null : s;
}

/** The limits a submitted form asks for (every one, an empty field clearing its limit); throws on a bad value. */
export function readLimits(v: FormValues): Limits {
  const budget = usdOrNull(v.budget_usd);
  return {
    rpm: wholeOrNull(v.rpm),
    tpm: wholeOrNull(v.tpm),
    max_parallel: wholeOrNull(v.max_parallel),
    budget_usd: budget,
    budget_period: budget === null ? null : (String(v.budget_period) as BudgetPeriod),
    allowed_models: String(v.allowed_models ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== ""),
    max_tokens_cap: wholeOrNull(v.max_tokens_cap),
  };
}
