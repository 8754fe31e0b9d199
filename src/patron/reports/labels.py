"""Words for the spreadsheet a person opens: column headers, figure names, sheet and report
titles in English, Korean and Chinese.

CSV and JSON keep the code keys (`issued_last_month`): programs read those. An XLSX file is read
by an owner or an accountant, so `export.to_xlsx` writes these words instead. A code without an
entry here falls back to the code itself; tests/reports/test_xlsx_words.py checks that every
report's workbook has words for all its headers in all three languages.
"""

from __future__ import annotations

LANGUAGES = ("en", "ko", "zh")

# code: (English, Korean, Chinese)
_WORDS: dict[str, tuple[str, str, str]] = {
    # columns and figures shared by several reports
    "period": ("Period", "기간", "期间"),
    "from": ("From", "시작일", "开始日期"),
    "to": ("To", "종료일", "结束日期"),
    "date": ("Date", "날짜", "日期"),
    "store": ("Store", "매장", "门店"),
    "channel": ("Channel", "채널", "渠道"),
    "tier": ("Tier", "등급", "等级"),
    "name": ("Name", "이름", "名称"),
    "kind": ("Kind", "종류", "类型"),
    "status": ("Status", "상태", "状态"),
    "figure": ("Figure", "항목", "项目"),
    "value": ("Value", "값", "数值"),
    "members": ("Members", "회원 수", "会员数"),
    "points": ("Points", "포인트", "积分"),
    "currency": ("Currency", "통화", "货币"),
    "total": ("Total", "합계", "合计"),
    "(none)": ("(none)", "(없음)", "(无)"),
    "earned": ("Earned", "적립", "获得"),
    "reversed": ("Reversed by refunds", "환불 회수", "退款扣回"),
    "redeemed": ("Redeemed", "사용", "已兑换"),
    "restored": ("Restored by refunds", "환불 복원", "退款返还"),
    "expired": ("Expired", "소멸", "已过期"),
    "adjusted_in": ("Adjusted in", "수동 적립", "手动增加"),
    "adjusted_out": ("Adjusted out", "수동 차감", "手动扣减"),
    "adjusted": ("Adjusted", "수동 조정", "手动调整"),
    "other": ("Other", "기타", "其他"),
    "net": ("Net change", "순증감", "净变化"),
    "issued": ("Issued", "발행", "发放"),
    "net_redeemed": ("Redeemed (net)", "순 사용", "净兑换"),
    "purchases": ("Purchases", "구매 건수", "购买笔数"),
    "sales": ("Sales", "매출", "销售额"),
    "issued_value": ("Issued value", "발행 가치", "发放价值"),
    "redeemed_value": ("Redeemed value", "사용 가치", "兑换价值"),
    # liability
    "as_of": ("As of", "기준일", "截至"),
    "basis": ("Basis", "기준", "口径"),
    "point_value": ("Value of one point", "1포인트 가치", "每积分价值"),
    "ledger_points": ("Points in the ledger", "원장 포인트", "账本积分"),
    "overdue_points": ("Points past expiry", "만료 지난 포인트", "已到期未处理积分"),
    "outstanding_points": ("Outstanding points", "미사용 포인트", "未使用积分"),
    "outstanding_value": ("Outstanding value", "미사용 포인트 가치", "未使用积分价值"),
    "projection_months": ("Months projected", "예측 개월 수", "预测月数"),
    "projected_breakage_points": (
        "Projected breakage (points)",
        "예상 소멸 포인트",
        "预计失效积分",
    ),
    "projected_breakage_value": ("Projected breakage (value)", "예상 소멸 가치", "预计失效价值"),
    "expected_redemption_value": ("Expected redemption value", "예상 사용 가치", "预计兑换价值"),
    "lifetime_earned": ("Earned, all time", "누적 적립", "累计获得"),
    "lifetime_reversed": ("Reversed, all time", "누적 환불 회수", "累计退款扣回"),
    "lifetime_redeemed": ("Redeemed, all time", "누적 사용", "累计兑换"),
    "lifetime_restored": ("Restored, all time", "누적 환불 복원", "累计退款返还"),
    "lifetime_expired": ("Expired, all time", "누적 소멸", "累计过期"),
    "lifetime_adjusted_in": ("Adjusted in, all time", "누적 수동 적립", "累计手动增加"),
    "lifetime_adjusted_out": ("Adjusted out, all time", "누적 수동 차감", "累计手动扣减"),
    "lifetime_other": ("Other, all time", "누적 기타", "累计其他"),
    "coupons_outstanding": ("Coupons outstanding", "미사용 쿠폰", "未使用优惠券"),
    "coupons_outstanding_value": (
        "Coupons outstanding (value)",
        "미사용 쿠폰 가치",
        "未使用优惠券价值",
    ),
    "total_liability_value": ("Total liability", "총 부채", "负债合计"),
    "months": ("Months", "개월", "月数"),
    "breakage_rate": ("Breakage rate", "소멸률", "失效率"),
    "redemption_rate": ("Redemption rate", "사용률", "兑换率"),
    # journal
    "entry": ("Entry", "분개", "分录"),
    "account": ("Account", "계정", "科目"),
    "debit": ("Debit", "차변", "借方"),
    "credit": ("Credit", "대변", "贷方"),
    "memo": ("Memo", "적요", "摘要"),
    # members
    "dormant_days": ("Days without a purchase to count as dormant", "휴면 기준 일수", "休眠天数"),
    "active": ("Active", "활동 회원", "活跃会员"),
    "dormant": ("Dormant", "휴면 회원", "休眠会员"),
    "never_purchased": ("Never purchased", "구매 없음", "从未购买"),
    "from_tier": ("From tier", "이전 등급", "原等级"),
    "to_tier": ("To tier", "새 등급", "新等级"),
    "direction": ("Direction", "방향", "方向"),
    # rules
    "rule": ("Rule", "규칙", "规则"),
    "earns": ("Earns", "적용 건수", "生效次数"),
    "budget_points": ("Budget", "예산", "预算"),
    "budget_used": ("Budget used", "사용한 예산", "已用预算"),
    "budget_left": ("Budget left", "남은 예산", "剩余预算"),
    # rewards
    "reward": ("Reward", "리워드", "奖励"),
    "redemptions": ("Redemptions", "교환 건수", "兑换笔数"),
    "units": ("Units", "수량", "数量"),
    "cancelled_units": ("Units cancelled", "취소 수량", "取消数量"),
    "cancelled_points": ("Points given back", "취소 포인트", "取消积分"),
    "cancelled_value": ("Value cancelled", "취소 가치", "取消价值"),
    "net_units": ("Units (net)", "순 수량", "净数量"),
    "net_points": ("Points (net)", "순 포인트", "净积分"),
    "net_value": ("Value (net)", "순 가치", "净价值"),
    "stock_left": ("Stock left", "남은 재고", "剩余库存"),
    "opening": ("Opening stock", "기초 재고", "期初库存"),
    "restocked": ("Restocked", "입고", "补货"),
    "returned": ("Returned", "반품", "退回"),
    "corrected": ("Corrected", "조정", "更正"),
    "closing": ("Closing stock", "기말 재고", "期末库存"),
    "unlimited": ("Unlimited", "무제한", "不限"),
    "coupons": ("Coupons", "쿠폰 수", "优惠券数"),
    "on_expiry": ("On expiry", "만료 시", "到期处理"),
    "expired_points": ("Points of expired coupons", "만료 쿠폰 포인트", "过期优惠券积分"),
    "expired_value": ("Value of expired coupons", "만료 쿠폰 가치", "过期优惠券价值"),
    "used": ("Used", "사용", "已使用"),
    "used_value": ("Value used", "사용 가치", "已使用价值"),
    # a member's balance
    "member_id": ("Member", "회원", "会员"),
    "balance": ("Balance", "잔액", "余额"),
    "available": ("Available", "사용 가능", "可用"),
    "pending": ("Pending", "적립 예정", "待入账"),
    "debt": ("Debt", "미수 포인트", "欠分"),
    "program": ("Program", "프로그램", "计划"),
    # the dashboard
    "today": ("Today", "오늘", "今天"),
    "issued_this_month": ("Issued this month", "이번 달 발행", "本月发放"),
    "issued_last_month": ("Issued last month", "지난달 발행", "上月发放"),
    "issued_value_last_month": ("Value issued last month", "지난달 발행 가치", "上月发放价值"),
    "redeemed_this_month": ("Redeemed this month", "이번 달 사용", "本月兑换"),
    "redeemed_last_month": ("Redeemed last month", "지난달 사용", "上月兑换"),
    "expired_this_month": ("Expired this month", "이번 달 소멸", "本月过期"),
    "expired_last_month": ("Expired last month", "지난달 소멸", "上月过期"),
    "breakage_rate_12m": ("Breakage rate, 12 months", "12개월 소멸률", "12个月失效率"),
    "redemption_rate_12m": ("Redemption rate, 12 months", "12개월 사용률", "12个月兑换率"),
    "active_members": ("Active members", "활동 회원", "活跃会员"),
    "dormant_members": ("Dormant members", "휴면 회원", "休眠会员"),
    "new_members_this_month": ("New members this month", "이번 달 신규 회원", "本月新会员"),
    "new_members_last_month": ("New members last month", "지난달 신규 회원", "上月新会员"),
    # sheet titles
    "liability": ("Liability", "포인트 부채", "积分负债"),
    "breakage": ("Breakage", "소멸", "失效"),
    "journal": ("Journal", "분개장", "分录"),
    "new members": ("New members", "신규 회원", "新会员"),
    "tiers": ("Tiers", "등급", "等级"),
    "tier moves": ("Tier moves", "등급 변동", "等级变动"),
    "rules": ("Earning rules", "적립 규칙", "积分规则"),
    "by reward": ("By reward", "리워드별", "按奖励"),
    "stock": ("Stock", "재고", "库存"),
    "coupons outstanding": ("Coupons outstanding", "미사용 쿠폰", "未使用优惠券"),
    "coupon breakage": ("Coupon breakage", "쿠폰 소멸", "优惠券失效"),
    "dashboard": ("Dashboard", "대시보드", "概览"),
    "days": ("Days", "일별", "每日"),
    "rewards": ("Rewards", "리워드", "奖励"),
    # the title row
    "report.points": ("Points by period", "기간별 포인트", "分期积分"),
    "report.liability": ("Points liability", "포인트 부채", "积分负债"),
    "report.journal": ("Accounting journal", "회계 분개장", "会计分录"),
    "report.members": ("Members", "회원", "会员"),
    "report.rules": ("Earning rules", "적립 규칙", "积分规则"),
    "report.rewards": ("Rewards redeemed", "리워드 교환", "奖励兑换"),
    "report.stock": ("Reward stock", "리워드 재고", "奖励库存"),
    "report.coupons": ("Coupons outstanding", "미사용 쿠폰", "未使用优惠券"),
    "report.coupon_breakage": ("Coupon breakage", "쿠폰 소멸", "优惠券失效"),
    "report.balance": ("Member balance", "회원 잔액", "会员余额"),
    "report.dashboard": ("Dashboard", "대시보드", "概览"),
    "exported": ("exported", "내보낸 시각", "导出时间"),
}


def word(code: str, language: str) -> str:
    """`code` in `language` (English, else the code itself, where none is written)."""
    found = _WORDS.get(code)
    if found is None:
        return code
    index = LANGUAGES.index(language) if language in LANGUAGES else 0
    return found[index]


def known(code: str) -> bool:
    return code in _WORDS
