"""Write the tool-use demo data: ``src/sftune/resources/tools_demo.jsonl`` and ``tools_demo_tools.json``.

The demo teaches a small model to call one weather tool, ``get_weather(city, unit)``, when a
question needs live weather, to answer from the tool's result, and to answer directly when no
tool is needed. Rows are OpenAI messages with a conversation-level ``tools`` list:

- single calls (English and Chinese): user -> assistant ``tool_calls`` -> ``tool`` result -> answer
  that uses the result (unit ``fahrenheit`` only when the user asks for it);
- several calls in one turn (two cities compared), and follow-ups (a second city in a second turn);
- direct answers, written by hand below, including weather *knowledge* (what fog is, the climate
  of the Sahara) that needs no live data, so the model learns when not to call.

The weather is invented (seeded random), since the demo's tool is a fake. Deterministic: the
same seed writes byte-identical files, which ``tests/resources/test_tools_demo.py`` checks.

    python scripts/make_tools_demo.py            # rewrites the bundled files
    python scripts/make_tools_demo.py --out DIR  # writes them elsewhere
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 14
RESOURCES = Path(__file__).resolve().parents[1] / "src" / "sftune" / "resources"

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}]

# Cities kept out of the training rows so the demo's eval questions ask about unseen ones.
HELD_OUT_CITIES = ("Madrid", "Vancouver", "Lima", "纽约", "拉萨")

CITIES_EN = ["Paris", "London", "Berlin", "Tokyo", "Sydney", "Toronto", "Chicago", "Rome", "Amsterdam", "Seoul",
             "Mumbai", "Cairo", "Lisbon", "Dublin", "Oslo", "Stockholm", "Vienna", "Prague", "Boston", "Seattle",
             "Denver", "Singapore", "Bangkok", "Istanbul", "Mexico City", "Nairobi", "Buenos Aires", "Cape Town",
             "Helsinki", "Athens", "Warsaw", "Zurich", "Shanghai", "Beijing", "Dubai"]
CITIES_ZH = ["北京", "上海", "广州", "深圳", "成都", "杭州", "武汉", "西安", "南京", "重庆", "天津", "苏州", "青岛",
             "厦门", "昆明", "哈尔滨", "长沙", "大连", "东京", "首尔", "巴黎", "伦敦", "悉尼", "新加坡", "香港"]

# (English adjective for "it's ...", Chinese phrase for "{city}现在...")
CONDITIONS = [("sunny", "晴"), ("cloudy", "多云"), ("rainy", "下着小雨"), ("overcast", "阴天"), ("windy", "风比较大"),
              ("foggy", "有雾"), ("clear", "晴朗")]
SNOW = ("snowy", "下雪")

Q_EN = ["What's the weather like in {city}?", "How's the weather in {city} right now?", "Can you check the current weather in {city}?",
        "I'm heading out in {city}. What's it like outside?", "weather in {city}", "Is it raining in {city}?",
        "Do I need a jacket in {city} today?", "What's the temperature in {city}?"]
Q_EN_F = ["What's the temperature in {city} in Fahrenheit?", "Tell me the weather in {city}, in °F please."]
Q_ZH = ["{city}天气怎么样？", "{city}现在天气如何？", "帮我查一下{city}的天气。", "{city}现在多少度？", "{city}下雨了吗？",
        "我在{city}，今天出门要穿外套吗？"]
Q_ZH_F = ["用华氏度告诉我{city}的气温。"]
Q_TWO_EN = ["Compare the weather in {a} and {b}.", "What's the weather in {a} and in {b}?", "Which is warmer right now, {a} or {b}?"]
Q_TWO_ZH = ["{a}和{b}哪个更暖和？", "帮我查一下{a}和{b}的天气。"]
# Follow-ups: a first question (worded unlike the single ones, so no prompt repeats), then a second city.
FIRST_EN, FIRST_ZH = "Weather check for {city}, please.", "{city}今天天气好吗？"
FOLLOW_EN, FOLLOW_ZH = ["And in {city}?", "What about {city}?"], ["那{city}呢？", "{city}呢？"]

DIRECT_EN = [
    ("Hi!", "Hello! How can I help you today?"),
    ("What causes rain?", "Rain forms when water vapour in the air cools and condenses into droplets in clouds; when the droplets grow heavy enough, they fall."),
    ("How do I convert Celsius to Fahrenheit?", "Multiply the Celsius value by 9/5 and add 32. For example, 20 °C is 68 °F."),
    ("What is 25 °C in Fahrenheit?", "25 °C is 77 °F."),
    ("What is a thermometer?", "A thermometer is an instrument that measures temperature."),
    ("Why is the sky blue?", "Air molecules scatter the short blue wavelengths of sunlight more than the red ones, so blue light reaches us from all over the sky."),
    ("What is humidity?", "Humidity is the amount of water vapour in the air; relative humidity compares it with the most the air could hold at that temperature."),
    ("What's 7 times 8?", "7 times 8 is 56."),
    ("Write a haiku about rain.", "Soft rain on the roof\nthe garden drinks in silence\npuddles hold the sky"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Thanks for your help!", "You're welcome! Let me know if you need anything else."),
    ("What does a meteorologist do?", "A meteorologist studies the atmosphere and uses observations and computer models to forecast the weather."),
    ("What is the difference between weather and climate?", "Weather is the state of the atmosphere at one time and place; climate is the average pattern of weather in a region over many years."),
    ("How many continents are there?", "There are seven continents: Africa, Antarctica, Asia, Australia, Europe, North America and South America."),
    ("Translate 'good morning' into Spanish.", "'Good morning' in Spanish is 'buenos días'."),
    ("What is a hurricane?", "A hurricane is a large rotating tropical storm with sustained winds of at least 119 km/h (74 mph), formed over warm ocean water."),
    ("Give me a tip for staying cool in hot weather.", "Drink plenty of water, stay in the shade during the hottest hours and wear light, loose clothing."),
    ("At what temperature does water boil in Fahrenheit?", "At sea level water boils at 212 °F (100 °C)."),
    ("Name three types of clouds.", "Three common types are cumulus, stratus and cirrus clouds."),
    ("What is the square root of 144?", "The square root of 144 is 12."),
    ("Tell me a fun fact.", "Honey hardly ever spoils: edible honey has been found in ancient Egyptian tombs."),
    ("What is a rainbow?", "A rainbow is an arc of colours that appears when sunlight is refracted, reflected and split into its colours by raindrops."),
    ("What is -40 °C in Fahrenheit?", "-40 °C is exactly -40 °F, the one temperature where both scales agree."),
    ("Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b"),
    ("What does the UV index measure?", "The UV index measures the strength of the sun's ultraviolet radiation; the higher it is, the faster skin burns."),
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare wrote 'Romeo and Juliet'."),
    ("What tools can you use?", "I can look up the current weather in a city with the get_weather tool. Other questions I answer from what I know."),
    ("What's the weather usually like in the Sahara?", "The Sahara is hot and very dry: scorching days, cool nights and very little rain all year."),
    ("What is fog?", "Fog is a cloud at ground level, made of tiny water droplets suspended in the air."),
    ("How much is 15% of 200?", "15% of 200 is 30."),
    ("Summarise: 'The meeting is moved from Monday to Wednesday at 10 am.'", "The meeting is now on Wednesday at 10 am instead of Monday."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("What is lightning?", "Lightning is a giant electrical discharge between clouds, or between a cloud and the ground, during a thunderstorm."),
    ("Good night!", "Good night! Sleep well."),
]
DIRECT_ZH = [
    ("你好！", "你好！有什么可以帮你的吗？"),
    ("雨是怎么形成的？", "空气中的水汽遇冷凝结成小水滴，小水滴在云中不断变大，重到一定程度就会落下来，形成降雨。"),
    ("摄氏度怎么换算成华氏度？", "用摄氏度乘以 9/5 再加 32。例如 20°C 等于 68°F。"),
    ("天空为什么是蓝色的？", "阳光中波长较短的蓝光更容易被空气分子散射，所以我们看到的天空是蓝色的。"),
    ("什么是湿度？", "湿度表示空气中水汽的多少；相对湿度是实际水汽量与该温度下空气最多能容纳的水汽量之比。"),
    ("三乘以九等于多少？", "三乘以九等于二十七。"),
    ("谢谢你！", "不客气！还有什么需要帮忙的吗？"),
    ("天气和气候有什么区别？", "天气是某个时间、某个地点的大气状况，气候是一个地区多年天气的平均特征。"),
    ("日本的首都是哪里？", "日本的首都是东京。"),
    ("什么是台风？", "台风是在西北太平洋温暖海面上形成的强烈热带气旋，常伴有狂风和暴雨。"),
    ("写一句关于春天的诗。", "春风拂面花自开，细雨无声润万物。"),
    ("彩虹是怎么出现的？", "阳光照进雨滴后发生折射和反射，不同颜色的光被分开，就形成了彩虹。"),
    ("一年有几个季节？", "一年有四个季节：春、夏、秋、冬。"),
    ("你能用哪些工具？", "我可以用 get_weather 工具查询某个城市当前的天气，其他问题我会根据已有的知识回答。"),
    ("夏天怎么防暑？", "多喝水，避免在正午高温时段长时间待在户外，穿轻薄透气的衣服。"),
    ("什么是雾？", "雾是贴近地面的云，由悬浮在空气中的细小水滴组成。"),
    ("把“下雨了”翻译成英文。", "“下雨了”的英文是 “It's raining.”"),
    ("撒哈拉沙漠的气候一般是怎样的？", "撒哈拉沙漠炎热干燥：白天酷热，夜晚较凉，全年降雨很少。"),
    ("晚安！", "晚安，祝你好梦！"),
    ("100 的平方根是多少？", "100 的平方根是 10。"),
]


class Maker:
    """Draws weather and call ids from one seeded generator, so the output is reproducible."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.n_calls = 0

    def weather(self, city: str, unit: str) -> dict:
        celsius = self.rng.randint(-6, 34)
        cond = SNOW if celsius <= 0 and self.rng.random() < 0.6 else self.rng.choice(CONDITIONS)
        temp = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
        return {"city": city, "temperature": temp, "unit": unit, "condition_en": cond[0], "condition_zh": cond[1], "celsius": celsius}

    def call(self, city: str, unit: str) -> tuple[dict, dict, dict]:
        """(the call in the assistant turn, the tool message, the weather drawn)."""
        self.n_calls += 1
        call_id = f"call_{self.rng.getrandbits(48):012x}"
        w = self.weather(city, unit)
        args = {"city": city, "unit": unit}
        call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(args, ensure_ascii=False)}}
        result = {"city": city, "temperature": w["temperature"], "unit": unit, "condition": w["condition_en"]}
        tool = {"role": "tool", "tool_call_id": call_id, "name": "get_weather", "content": json.dumps(result, ensure_ascii=False)}
        return call, tool, w


def _deg(w: dict) -> str:
    return f"{w['temperature']} °{'C' if w['unit'] == 'celsius' else 'F'}"


def answer_en(question: str, w: dict, rng: random.Random) -> str:
    city, cond, deg = w["city"], w["condition_en"], _deg(w)
    wet = cond in ("rainy", "snowy")
    if question.startswith("Is it raining"):
        return (f"Yes, it's raining in {city} right now, at {deg}." if cond == "rainy"
                else f"No rain in {city} at the moment: it's {cond} and {deg}.")
    if question.startswith("Do I need a jacket"):
        advice = "a jacket is a good idea" if w["celsius"] < 14 or wet else "you probably won't need one"
        return f"It's {deg} and {cond} in {city}, so {advice}."
    text = rng.choice([f"It's {deg} and {cond} in {city} right now.", f"Right now it's {cond} in {city}, with a temperature of {deg}.",
                       f"The current weather in {city}: {cond}, {deg}."])
    if cond == "rainy":
        text += " You may want an umbrella."
    elif w["celsius"] <= 3:
        text += " Dress warmly."
    return text


def answer_zh(question: str, w: dict, rng: random.Random) -> str:
    city, cond = w["city"], w["condition_zh"]
    deg = f"{w['temperature']}°{'C' if w['unit'] == 'celsius' else 'F'}"
    if question.endswith("下雨了吗？"):
        return f"是的，{city}现在{cond}，气温 {deg}。" if "雨" in cond else f"{city}现在没有下雨，{cond}，气温 {deg}。"
    if "外套" in question:
        advice = "建议穿外套" if w["celsius"] < 14 or "雨" in cond or "雪" in cond else "应该不用穿外套"
        return f"{city}现在{cond}，气温 {deg}，{advice}。"
    text = rng.choice([f"{city}现在{cond}，气温 {deg}。", f"{city}目前{cond}，{deg}。", f"现在{city}{cond}，温度大约 {deg}。"])
    if "雨" in cond:
        text += "出门记得带伞。"
    elif w["celsius"] <= 3:
        text += "注意保暖。"
    return text


def single(mk: Maker, question: str, city: str, unit: str, zh: bool) -> list[dict]:
    call, tool, w = mk.call(city, unit)
    answer = (answer_zh if zh else answer_en)(question, w, mk.rng)
    return [{"role": "user", "content": question}, {"role": "assistant", "content": None, "tool_calls": [call]}, tool,
            {"role": "assistant", "content": answer}]


def two_cities(mk: Maker, template: str, a: str, b: str, zh: bool) -> list[dict]:
    (ca, ta, wa), (cb, tb, wb) = mk.call(a, "celsius"), mk.call(b, "celsius")
    while wb["celsius"] == wa["celsius"]:  # a comparison needs a warmer city
        wb["celsius"] = wb["temperature"] = wb["celsius"] + 1
        tb["content"] = json.dumps({"city": b, "temperature": wb["temperature"], "unit": "celsius", "condition": wb["condition_en"]}, ensure_ascii=False)
    warmer = a if wa["celsius"] > wb["celsius"] else b
    if zh:
        answer = f"{a}{wa['condition_zh']}，{wa['temperature']}°C；{b}{wb['condition_zh']}，{wb['temperature']}°C。{warmer}更暖和。"
    else:
        answer = (f"{a}: {wa['condition_en']}, {wa['temperature']} °C. {b}: {wb['condition_en']}, {wb['temperature']} °C. "
                  f"{warmer} is warmer right now.")
    return [{"role": "user", "content": template.format(a=a, b=b)}, {"role": "assistant", "content": None, "tool_calls": [ca, cb]},
            ta, tb, {"role": "assistant", "content": answer}]


def build(seed: int = SEED) -> list[dict]:
    mk = Maker(seed)
    rng = mk.rng
    convs: list[list[dict]] = []
    for i, city in enumerate(CITIES_EN * 2):  # each English city twice, with different questions
        if i % 6 == 3:  # 6 does not divide 35, so the second pass asks for °F about other cities
            q, unit = rng.choice(Q_EN_F), "fahrenheit"
        else:
            q, unit = Q_EN[(i + i // len(CITIES_EN)) % len(Q_EN)], "celsius"
        convs.append(single(mk, q.format(city=city), city, unit, zh=False))
    for i, city in enumerate(CITIES_ZH * 2):
        q, unit = (Q_ZH_F[0], "fahrenheit") if i % 9 == 4 else (Q_ZH[(i + i // len(CITIES_ZH)) % len(Q_ZH)], "celsius")
        convs.append(single(mk, q.format(city=city), city, unit, zh=True))
    for i in range(12):
        a, b = rng.sample(CITIES_EN, 2)
        convs.append(two_cities(mk, Q_TWO_EN[i % len(Q_TWO_EN)], a, b, zh=False))
    for i in range(10):
        a, b = rng.sample(CITIES_ZH, 2)
        convs.append(two_cities(mk, Q_TWO_ZH[i % len(Q_TWO_ZH)], a, b, zh=True))
    firsts = {False: rng.sample(CITIES_EN, 5), True: rng.sample(CITIES_ZH, 5)}
    for i in range(10):  # follow-ups: a second city in a second turn, after a first full round
        zh = i % 2 == 1
        a = firsts[zh][i // 2]
        b = rng.choice([c for c in (CITIES_ZH if zh else CITIES_EN) if c != a])
        first = single(mk, (FIRST_ZH if zh else FIRST_EN).format(city=a), a, "celsius", zh)
        follow = (FOLLOW_ZH if zh else FOLLOW_EN)[i % 2].format(city=b)
        second = single(mk, follow, b, "celsius", zh)
        convs.append(first + second)
    convs += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in DIRECT_EN + DIRECT_ZH]
    rng.shuffle(convs)
    return [{"messages": c, "tools": TOOLS} for c in convs]


def write(out: Path, seed: int = SEED) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = build(seed)
    data, tools = out / "tools_demo.jsonl", out / "tools_demo_tools.json"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tools.write_text(json.dumps(TOOLS, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return data, tools


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESOURCES, help="folder to write into (default: the bundled resources)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    d, t = write(args.out, args.seed)
    print(f"wrote {d} ({sum(1 for _ in d.open(encoding='utf-8'))} rows) and {t}")
