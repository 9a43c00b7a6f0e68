from crm_common.migrate import run_env
from gateway.models import Base
run_env(Base.metadata)
