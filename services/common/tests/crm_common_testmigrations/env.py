from crm_common.migrate import run_env

from crm_common_testmigrations import metadata

run_env(metadata)
