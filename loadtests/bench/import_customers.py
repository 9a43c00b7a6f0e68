"""Benchmark: import N customers over HTTP and time it until the job is done.

    python loadtests/bench/import_customers.py --base-url http://127.0.0.1:8000 \
        --email admin@example.com --password ... --rows 100000
    python loadtests/bench/import_customers.py --start-system --rows 100000

(--start-system starts the whole system on throwaway PostgreSQL databases
and a fresh RabbitMQ vhost, as the end-to-end tests do, and signs in as its
admin.)

Generates a realistic CSV (Chinese and English names, mobile numbers, emails,
companies, tags, a few bad rows), uploads it with dry_run=false, polls the
job until it is done, and prints rows, seconds and rows/s. Runs with the main
virtualenv (requests only). Each run uses fresh external ids and phone
numbers, so it creates N new customers even against a database that holds
earlier runs.
"""
import argparse
import csv
import io
import json
import random
import secrets
import sys
import time

import requests

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
FIRST = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Mia", "Noah"]
LAST = ["Smith", "Müller", "García", "Chen", "Wang", "Johnson", "Dubois", "Rossi", "Kim", "Nguyen"]
COMPANIES = ["阿里巴巴", "腾讯科技", "Acme Trading", "Globex", "华为技术", "Initech", "京东商城", "Umbrella Corp",
             "小米科技", "Stark Industries"]
CITIES = ["上海", "北京", "深圳", "杭州", "Guangzhou", "Chengdu", "Hong Kong", "Singapore"]
TAGS = ["vip", "华东", "华南", "展会", "referral", "wholesale", "重点客户", "newsletter"]
COLUMNS = ["编号", "客户名称", "公司", "手机", "邮箱", "城市", "标签", "等级", "来源"]
MAPPING = {"编号": "external_id", "客户名称": "name", "公司": "company.name", "手机": "phones", "邮箱": "emails",
           "城市": "address.city", "标签": "tags", "等级": "tier", "来源": "source"}
# One row in this many is broken on purpose (a bad phone or email): the report must list them.
BAD_ROW_EVERY = 2000


def make_csv(rows, seed):
    rng = random.Random(seed)
    run = secrets.token_hex(3)
    # A distinct mobile prefix per run keeps phones unique across runs (no duplicate skips).
    prefix = rng.choice(["135", "136", "137", "138", "139", "150", "151", "188"])
    block = rng.randrange(100)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    bad = 0
    for n in range(rows):
        chinese = n % 2 == 0
        name = (rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)) if chinese \
            else f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        phone = f"{prefix}{block:02d}{n:06d}"
        email = f"user{n}.{run}@example.com"
        if n % BAD_ROW_EVERY == 1:
            bad += 1
            phone, email = ("12345", email) if bad % 2 else (phone, "not-an-email")
        tags = "；".join(rng.sample(TAGS, rng.randint(0, 3)))
        # Branches of a few groups: the same name at the same branch would be a duplicate.
        company = f"{rng.choice(COMPANIES)} {n // 50}"
        writer.writerow([f"bench-{run}-{n}", name, company, phone, email, rng.choice(CITIES), tags,
                         rng.choice("ABCD"), rng.choice(["展会", "website", "referral", "cold call"])])
    return buffer.getvalue().encode("utf-8"), bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--email")
    parser.add_argument("--password")
    parser.add_argument("--start-system", action="store_true",
                        help="start the system on throwaway PostgreSQL databases and use its admin")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.start_system:
        from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, running_system

        with running_system("bench", test_timers=False) as system:
            print(f"system running at {system.gateway_url} (logs in {system.workdir})", flush=True)
            run(system.gateway_url, ADMIN_EMAIL, ADMIN_PASSWORD, args)
        return
    if not (args.email and args.password):
        parser.error("--email and --password are required (or --start-system)")
    run(args.base_url, args.email, args.password, args)


def run(base_url, email, password, args):
    api = base_url.rstrip("/") + "/api/v1"
    login = requests.post(api + "/auth/login", json={"email": email, "password": password}, timeout=30)
    login.raise_for_status()
    http = requests.Session()
    http.headers["Authorization"] = "Bearer " + login.json()["access_token"]

    content, bad_rows = make_csv(args.rows, args.seed)
    print(f"generated {args.rows} rows ({len(content) / 1e6:.1f} MB, {bad_rows} bad on purpose)", flush=True)
    started = time.monotonic()
    response = http.post(api + "/imports/customers", files={"file": ("bench.csv", content, "text/csv")},
                         data={"mapping": json.dumps(MAPPING, ensure_ascii=False), "dry_run": "false",
                               "on_duplicate": "skip"}, timeout=300)
    if response.status_code not in (201, 202):
        sys.exit(f"upload failed: {response.status_code} {response.text[:500]}")
    job = response.json()
    uploaded = time.monotonic() - started
    print(f"uploaded in {uploaded:.1f}s: job {job['id']} {job['status']}", flush=True)
    deadline = started + args.timeout
    last_done = None
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {args.timeout:.0f}s: {job['done_rows']} of {job['total_rows']} rows done")
        time.sleep(0.5)
        job = http.get(f"{api}/imports/{job['id']}", timeout=30).json()
        if job.get("done_rows") != last_done:
            last_done = job.get("done_rows")
            print(f"  {time.monotonic() - started:6.1f}s  {job['status']}  {last_done}/{job.get('total_rows')}",
                  flush=True)
    seconds = time.monotonic() - started
    if job["status"] != "done":
        sys.exit(f"import {job['status']}: {job.get('error')}")
    report = job["report"]
    print(json.dumps({key: report[key] for key in ("rows_read", "created", "updated", "skipped", "rejected_count")}))
    print(f"rows={report['rows_read']} seconds={seconds:.1f} rows_per_second={report['rows_read'] / seconds:.0f}")


if __name__ == "__main__":
    main()
