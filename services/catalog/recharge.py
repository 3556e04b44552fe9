"""Recharge: the rules (rate, minimum, bonus tiers) and plans admins edit, the options users see,
and the recharge quote (credits for an amount or a plan, by a payment method)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.catalog import repository
from services.catalog.changes import Change, Edit, Entries, Subject, apply_change
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Amount, Catalog, PaymentMethod, Plan, RechargeRules

# 10^9 fen = 10 million RMB: far above any real top-up, far below int64 overflow in milli-credits.
MAX_RECHARGE_MINOR = 10**9

PLANS = Entries(AuditEntity.PLAN, Plan, lambda catalog: catalog.plans)


RECHARGE_RULES = Subject(
    AuditEntity.RECHARGE_RULES,
    "",
    lambda catalog: catalog.recharge_rules,
    lambda session, catalog: repository.save_recharge_rules(session, catalog.recharge_rules),
)


async def update_recharge_rules(edit: Edit, data: dict[str, Any]) -> Change:
    def mutate(catalog: Catalog) -> None:
        catalog.recharge_rules = RechargeRules.model_validate(data)

    return await apply_change(edit, RECHARGE_RULES, AuditAction.RECHARGE_RULES_UPDATE, mutate)


def recharge_options(catalog: Catalog) -> tuple[RechargeRules, list[Plan], list[PaymentMethod]]:
    return (
        catalog.recharge_rules,
        [p for p in catalog.plans if p.enabled],
        [m for m in catalog.payment_methods if m.enabled],
    )


@dataclass(frozen=True)
class RechargeQuote:
    method: PaymentMethod
    amount: Amount
    plan_code: str
    paid_credits: int
    bonus_credits: int
    catalog_version: int

    @property
    def total_credits(self) -> int:
        return self.paid_credits + self.bonus_credits


def bonus_for(rules: RechargeRules, amount: Amount) -> int:
    """The bonus of the highest tier `amount` reaches, as a flat number of milli-credits.

    300 RMB → 30 bonus credits; 500 RMB reaches only the 300 tier → 500 + 30 = 530 credits;
    1000 RMB → 150 bonus credits. Amounts between tiers never get a pro-rated bonus.
    """
    reached = [tier for tier in rules.bonus_tiers if amount.minor >= tier.amount.minor]
    if not reached:
        return 0
    tier = reached[-1]
    return tier.credits - rules.base_credits(tier.amount)


def quote_recharge(
    catalog: Catalog, *, method_code: str, amount: Amount | None = None, plan_code: str = ""
) -> RechargeQuote:
    method = catalog.payment_method(method_code)
    if method is None:
        raise NotFound(f"no payment method {method_code!r}", code="payment_method_not_found")
    if not method.enabled:
        raise FailedPrecondition(f"payment method {method.code} is disabled", code="payment_method_disabled")

    def currency_check(currency: str, allowed: list[str]) -> None:
        if currency not in allowed or currency not in method.currencies:
            ok = [c for c in allowed if c in method.currencies]
            raise FailedPrecondition(
                f"{method.code} cannot pay in {currency!r} here; allowed: {', '.join(ok) or 'none'}",
                code="unsupported_currency",
                allowed=",".join(ok),
            )

    if plan_code:
        plan = catalog.plan(plan_code)
        if plan is None:
            raise NotFound(f"no plan {plan_code!r}", code="plan_not_found")
        if not plan.enabled:
            raise FailedPrecondition(f"plan {plan.code} is not available", code="plan_disabled")
        currency_check(plan.price.currency, [plan.price.currency])
        return RechargeQuote(method, plan.price, plan.code, plan.credits, 0, catalog.version)
    if amount is None:
        raise InvalidArgument("give an amount or a plan", code="invalid_recharge")
    rules = catalog.recharge_rules
    currency_check(amount.currency, [rules.currency])
    if amount.minor < rules.minimum.minor:
        raise FailedPrecondition(
            f"the minimum recharge is {rules.minimum.money}",
            code="below_minimum_recharge",
            minimum=rules.minimum.money.major_str(),
            currency=rules.currency,
        )
    if amount.minor > MAX_RECHARGE_MINOR:
        raise InvalidArgument("the amount is too large", code="amount_too_large")
    return RechargeQuote(
        method, amount, "", rules.base_credits(amount), bonus_for(rules, amount), catalog.version
    )
