"""The fixed prose of the product documentation, in every supported language.

One table, keyed by message id: English is the product document's wording, Chinese says the same thing.
Every id exists in every language (a test checks it), so both languages render the same structure.
Placeholders in braces are filled by the renderer with data from the live catalog.
"""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["en", "zh"]
LANGUAGES: Final[tuple[Lang, ...]] = ("en", "zh")

TEXT: Final[dict[str, dict[Lang, str]]] = {
    # -- shared ------------------------------------------------------------------------------------
    "view_label": {"en": "Reading view", "zh": "阅读视图"},
    "list_sep": {"en": ", ", "zh": "、"},
    "clause_sep": {"en": "; ", "zh": "；"},
    "none": {"en": "none", "zh": "无"},
    "rate.one": {"en": "{credits} credit = 1 {unit}", "zh": "{credits} 积分 = 1 {unit}"},
    "rate.other": {"en": "{credits} credits = 1 {unit}", "zh": "{credits} 积分 = 1 {unit}"},
    "currency.CNY.unit": {"en": "RMB", "zh": "元"},
    "currency.CNY.amount": {"en": "{amount} RMB", "zh": "{amount} 元"},
    "currency.USD.unit": {"en": "USD", "zh": "美元"},
    "currency.USD.amount": {"en": "${amount}", "zh": "${amount}"},
    # -- Pricing Guide -----------------------------------------------------------------------------
    "pricing.label": {"en": "PRICING GUIDE", "zh": "价格指南"},
    "pricing.title": {"en": "Billing & Credits Guide", "zh": "计费与积分指南"},
    "pricing.subtitle": {
        "en": "A unified guide to the live credit system, recharge "
        "rules, payment methods, and billing logic.",
        "zh": "关于当前积分体系、充值规则、支付方式与计费逻辑的统一说明。",
    },
    "pricing.credit_system": {"en": "Credit System", "zh": "积分体系"},
    "pricing.rule": {"en": "Current rule: {rate}.", "zh": "当前规则：{rate}。"},
    "pricing.minimum": {"en": "Minimum recharge amount: {amount}.", "zh": "最低充值金额：{amount}。"},
    "pricing.bonuses": {"en": "Recharge bonuses: {tiers}.", "zh": "充值赠送：{tiers}。"},
    "pricing.bonus_tier": {
        "en": "{amount} delivers {credits} credits",
        "zh": "充值 {amount}，到账 {credits} 积分",
    },
    "pricing.no_bonuses": {"en": "Recharge bonuses: none.", "zh": "充值赠送：暂无。"},
    "pricing.never_expire": {
        "en": "Credits never expire; failed tasks are not charged; "
        "new submissions stop when balance is insufficient.",
        "zh": "积分永久有效；失败的任务不扣费；余额不足时无法提交新任务。",
    },
    "pricing.may_expire": {
        "en": "Credits expire as configured; failed tasks are not charged; "
        "new submissions stop when balance is insufficient.",
        "zh": "积分按配置到期；失败的任务不扣费；余额不足时无法提交新任务。",
    },
    "pricing.plans": {"en": "Current Recharge Plans", "zh": "当前充值套餐"},
    "pricing.plan": {
        "en": "{name}: {price}, delivers {credits} credits",
        "zh": "{name}：{price}，到账 {credits} 积分",
    },
    "pricing.no_plans": {"en": "No recharge plans are available right now.", "zh": "当前暂无充值套餐。"},
    "pricing.payments": {"en": "Payments and Records", "zh": "支付与记录"},
    "pricing.methods": {"en": "Payment methods: {methods}", "zh": "支付方式：{methods}"},
    "pricing.records": {
        "en": "The Billing page shows recharge records, consumption "
        "records, and payment callback logs together.",
        "zh": "账单页面集中展示充值记录、消费记录和支付回调日志。",
    },
    "pricing.balance": {
        "en": "The top-right balance, Billing page balance, and Usage statistics share the same data source.",
        "zh": "右上角余额、账单页面余额与用量统计使用同一数据源。",
    },
    "pricing.model_rules": {"en": "Model Billing Rules", "zh": "模型计费规则"},
    "pricing.model_rules.current": {
        "en": "Charges come from the currently enabled models and pricing rules. "
        "Image and video models are typically billed per generation, per image, or per second.",
        "zh": "扣费依据当前启用的模型及其计费规则。图片和视频模型通常按次、按张或按秒计费。",
    },
    "pricing.model_rules.workflows": {
        "en": "Workflows are billed from each template's pricing configuration.",
        "zh": "工作流按各模板的价格配置计费。",
    },
    "pricing.model_rules.public": {
        "en": "The Pricing page reflects the system's current public model configuration.",
        "zh": "价格页面反映系统当前的公开模型配置。",
    },
    # -- model pages (video, image) ----------------------------------------------------------------
    "video.label": {"en": "VIDEO MODELS", "zh": "视频模型"},
    "video.title": {"en": "Video Generation Models", "zh": "视频生成模型"},
    "video.subtitle.one": {
        "en": "{n} public video model with its supported specs, billing, and capabilities.",
        "zh": "{n} 个公开视频模型及其支持的规格、计费方式和能力。",
    },
    "video.subtitle.other": {
        "en": "{n} public video models with their supported specs, billing, and capabilities.",
        "zh": "{n} 个公开视频模型及其支持的规格、计费方式和能力。",
    },
    "video.enabled": {"en": "Currently Enabled Video Models", "zh": "当前启用的视频模型"},
    "video.generated": {
        "en": "The list below is generated from the current public video model configuration.",
        "zh": "以下列表根据当前公开的视频模型配置生成。",
    },
    "video.empty": {
        "en": "No public video model is enabled right now. An admin must enable models first.",
        "zh": "当前没有启用的公开视频模型，需要管理员先启用模型。",
    },
    "image.label": {"en": "IMAGE MODELS", "zh": "图片模型"},
    "image.title": {"en": "Image Generation Models", "zh": "图片生成模型"},
    "image.subtitle.one": {
        "en": "{n} public image model with its supported specs, billing, and capabilities.",
        "zh": "{n} 个公开图片模型及其支持的规格、计费方式和能力。",
    },
    "image.subtitle.other": {
        "en": "{n} public image models with their supported specs, billing, and capabilities.",
        "zh": "{n} 个公开图片模型及其支持的规格、计费方式和能力。",
    },
    "image.enabled": {"en": "Currently Enabled Image Models", "zh": "当前启用的图片模型"},
    "image.generated": {
        "en": "The list below is generated from the current public image model configuration.",
        "zh": "以下列表根据当前公开的图片模型配置生成。",
    },
    "image.empty": {
        "en": "No public image model is enabled right now. An admin must enable models first.",
        "zh": "当前没有启用的公开图片模型，需要管理员先启用模型。",
    },
    "models.live": {
        "en": "Model names, supported specs, and pricing follow the live system configuration.",
        "zh": "模型名称、支持的规格和价格均以系统实时配置为准。",
    },
    "model.code": {"en": "Model code: {code}", "zh": "模型代码：{code}"},
    "model.billing": {"en": "Billing: {billing}", "zh": "计费：{billing}"},
    "model.ratios": {"en": "Ratios: {values}", "zh": "比例：{values}"},
    "model.resolutions": {"en": "Resolutions: {values}", "zh": "分辨率：{values}"},
    "model.durations": {"en": "Durations: {values}", "zh": "时长（秒）：{values}"},
    "model.capabilities": {"en": "Capabilities: {values}", "zh": "能力：{values}"},
    "model.capabilities.inherited": {
        "en": "Capabilities: Uses the current default capability set from admin config.",
        "zh": "能力：使用后台配置中的当前默认能力集。",
    },
    "unit.per_generation": {"en": "Per generation {price} credits", "zh": "按次 {price} 积分"},
    "unit.per_image": {"en": "Per image {price} credits", "zh": "按张 {price} 积分"},
    "unit.per_second": {"en": "Per second {price} credits", "zh": "按秒 {price} 积分"},
    "unit.per_1k_tokens": {
        "en": "Per 1K tokens: input {input} credits, output {output} credits",
        "zh": "每千 tokens：输入 {input} 积分，输出 {output} 积分",
    },
    "unit.unspecified": {"en": "{price} credits", "zh": "{price} 积分"},
    "capability.first_frame": {"en": "first frame", "zh": "首帧"},
    "capability.image_to_video": {"en": "image to video", "zh": "图生视频"},
    "capability.reference_image": {"en": "reference image", "zh": "参考图"},
    "capability.image_edit": {"en": "image edit", "zh": "图片编辑"},
    "capability.product_image": {"en": "product image", "zh": "产品图"},
    # -- Getting Started ---------------------------------------------------------------------------
    "start.label": {"en": "GETTING STARTED", "zh": "新手入门"},
    "start.title": {"en": "Getting Started", "zh": "快速开始"},
    "start.subtitle": {
        "en": "The real usage path from registration and recharge to running tasks in the current product.",
        "zh": "在当前产品中从注册、充值到运行任务的实际使用路径。",
    },
    "start.path": {"en": "Quick Start Path", "zh": "快速上手路径"},
    "start.path.register": {
        "en": "Register an account and complete email verification.",
        "zh": "注册账号并完成邮箱验证。",
    },
    "start.path.recharge": {
        "en": "Recharge on the Billing page. The current rule is {rate} with a {minimum} minimum.",
        "zh": "在账单页面充值。当前规则为 {rate}，最低充值 {minimum}。",
    },
    "start.path.studio": {
        "en": "Open Copy Studio, Image Studio, or Video Studio based on the task type.",
        "zh": "根据任务类型打开文案工作室、图片工作室或视频工作室。",
    },
    "start.path.submit": {
        "en": "Select an enabled model, fill in the prompt and parameters, then submit the task.",
        "zh": "选择已启用的模型，填写提示词和参数，然后提交任务。",
    },
    "start.path.track": {
        "en": "Track progress on Tasks, monitor spend on Usage, and watch "
        "the live balance in the top-right corner.",
        "zh": "在任务页面跟踪进度，在用量页面查看消费，并在右上角查看实时余额。",
    },
    "start.areas": {"en": "Available Product Areas", "zh": "可用的产品模块"},
    "start.areas.copy": {
        "en": "Copy Studio: conversational generation for marketing copy and scripts.",
        "zh": "文案工作室：以对话方式生成营销文案和脚本。",
    },
    "start.areas.image": {
        "en": "Image Studio: generation for product images, ad creatives, and image reference tasks.",
        "zh": "图片工作室：生成产品图和广告素材，并支持参考图任务。",
    },
    "start.areas.video": {
        "en": "Video Studio: configure ratio, resolution, and duration before generation.",
        "zh": "视频工作室：生成前配置比例、分辨率和时长。",
    },
    "start.areas.workflow": {
        "en": "Workflow: chain copy, image, and video steps into an automated pipeline.",
        "zh": "工作流：将文案、图片和视频步骤串联成自动化流水线。",
    },
    "start.areas.records": {
        "en": "Tasks / Billing / Usage: unified places to review outputs, spend, and statistics.",
        "zh": "任务 / 账单 / 用量：统一查看产出、消费和统计数据。",
    },
    "start.notes": {"en": "Usage Notes", "zh": "使用说明"},
    "start.notes.models": {
        "en": "Model lists come from live admin configuration. If a list is "
        "empty, an admin must enable models first.",
        "zh": "模型列表来自后台实时配置。如果列表为空，需要管理员先启用模型。",
    },
    "start.notes.balance": {
        "en": "Check balance before submitting. Failed tasks follow the system's refund or no-charge rules.",
        "zh": "提交前请确认余额。失败的任务按系统的退款或不扣费规则处理。",
    },
    "start.notes.languages": {
        "en": "The Chinese and English docs now share the same document "
        "structure and only differ by language.",
        "zh": "中英文文档现已采用相同的文档结构，仅语言不同。",
    },
    # -- Workflow Guide ----------------------------------------------------------------------------
    "workflow.label": {"en": "WORKFLOW GUIDE", "zh": "工作流指南"},
    "workflow.title": {"en": "Workflow Guide", "zh": "工作流指南"},
    "workflow.subtitle.one": {
        "en": "{n} public workflow template with its inputs, steps, and billing behavior.",
        "zh": "{n} 个公开工作流模板及其输入、步骤和计费方式。",
    },
    "workflow.subtitle.other": {
        "en": "{n} public workflow templates with their inputs, steps, and billing behavior.",
        "zh": "{n} 个公开工作流模板及其输入、步骤和计费方式。",
    },
    "workflow.intro": {"en": "Workflow Guide", "zh": "工作流指南"},
    "workflow.intro.chain": {
        "en": "Workflows chain multiple generation steps into a single execution path.",
        "zh": "工作流将多个生成步骤串联为一条执行路径。",
    },
    "workflow.intro.source": {
        "en": "Template pricing, required inputs, and steps below come "
        "from the current workflow configuration.",
        "zh": "以下模板的价格、必填输入和步骤均来自当前的工作流配置。",
    },
    "workflow.empty": {
        "en": "No public workflow template is available right now.",
        "zh": "当前暂无公开的工作流模板。",
    },
    "template.code": {"en": "Template code: {code}", "zh": "模板代码：{code}"},
    "template.price": {"en": "Price: {price} credits", "zh": "价格：{price} 积分"},
    "template.inputs": {"en": "Required inputs: {values}", "zh": "必填输入：{values}"},
    "template.steps": {"en": "Steps: {steps}", "zh": "步骤：{steps}"},
    "template.notes": {"en": "Notes: {notes}", "zh": "说明：{notes}"},
    "workflow.results": {"en": "Execution and Results", "zh": "执行与结果"},
    "workflow.results.debit": {
        "en": "Workflow runs debit credits using template pricing at start, "
        "and refunds follow the current system rules when applicable.",
        "zh": "工作流运行开始时按模板价格扣除积分，如需退款则按系统当前规则处理。",
    },
    "workflow.results.history": {
        "en": "Run history, step status, and outputs are available on the Workflow page.",
        "zh": "运行历史、步骤状态和产出均可在工作流页面查看。",
    },
}

_MONTHS_EN: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def t(key: str, lang: Lang, **values: object) -> str:
    """The message `key` in `lang`, with its placeholders filled."""
    template = TEXT[key][lang]
    return template.format(**values) if values else template


def has(key: str) -> bool:
    return key in TEXT


def format_date(year: int, month: int, day: int, lang: Lang) -> str:
    """ "Mar 14, 2026" / "2026年3月14日"."""
    if lang == "zh":
        return f"{year}年{month}月{day}日"
    return f"{_MONTHS_EN[month - 1]} {day}, {year}"
