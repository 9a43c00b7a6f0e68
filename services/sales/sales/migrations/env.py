from crm_common.migrate import run_env

from sales.models import Base

run_env(Base.metadata)
