// Preloaded into the MDN HTTP Observatory (node --require): STACK_RESOLVE="name=address" makes
// the site's name resolve to the test host, as curl's --resolve does, without /etc/hosts.
const dns = require("node:dns");
const [name, address] = (process.env.STACK_RESOLVE || "").split("=");
const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (typeof options === "function") [callback, options] = [options, {}];
  if (hostname !== name) return lookup.call(dns, hostname, options, callback);
  const family = address.includes(":") ? 6 : 4;
  if (options && options.all) return process.nextTick(callback, null, [{ address, family }]);
  return process.nextTick(callback, null, address, family);
};
