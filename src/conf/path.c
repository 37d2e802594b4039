/* Where the configuration is when nobody says: shared by ternd and every tern subcommand so
 * that both always look in the same place. */
#include <stdlib.h>
#include <unistd.h>

#include "conf/config.h"

const char *conf_default_path(void)
{
    const char *env = getenv("TERN_CONF");
    if (env && *env)
        return env;
    if (access("/etc/tern/tern.conf", F_OK) == 0)
        return "/etc/tern/tern.conf";
    return "./var/tern.conf";
}
