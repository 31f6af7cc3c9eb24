# Loads a Vagrantfile with a stand-in for Vagrant that records what it configures and prints it as
# JSON (test/vagrant/vagrant.test.ts reads it): the global settings and, per machine in definition
# order, hostname, networks, providers and provisioners. PROBE_PLUGINS lists the plugins that
# Vagrant.has_plugin? admits. Usage: ruby vagrantfile-probe.rb PATH/Vagrantfile
require "json"

# Records `x = v` assignments; `provider` blocks are run against one of these.
class ProbeSettings
  attr_reader :values

  def initialize
    @values = {}
  end

  def method_missing(name, *args)
    key = name.to_s
    return super unless key.end_with?("=") && args.size == 1

    @values[key.chomp("=")] = args.first
  end

  def respond_to_missing?(name, include_private = false)
    name.to_s.end_with?("=") || super
  end
end

# config.vm, or a machine's vm.
class ProbeVm
  attr_accessor :box, :hostname
  attr_reader :machines

  def initialize
    @synced = []
    @networks = []
    @providers = {}
    @provisions = []
    @machines = []
  end

  def synced_folder(src, dst, **opts)
    @synced << { "src" => src, "dst" => dst, "opts" => opts }
  end

  def network(type, **opts)
    @networks << { "type" => type, "opts" => opts }
  end

  def provider(name)
    settings = ProbeSettings.new
    yield settings
    @providers[name.to_s] = settings.values
  end

  def provision(name, **opts)
    @provisions << { "name" => name, "opts" => opts }
  end

  def define(name)
    machine = ProbeConfig.new
    yield machine
    @machines << { "name" => name.to_s }.merge(machine.vm.to_h)
  end

  def to_h
    { "box" => @box, "hostname" => @hostname, "synced" => @synced, "networks" => @networks,
      "providers" => @providers, "provisions" => @provisions }
  end
end

class ProbeConfig
  attr_reader :vm

  def initialize
    @vm = ProbeVm.new
  end
end

module Vagrant
  def self.require_version(*) end

  def self.has_plugin?(name)
    ENV.fetch("PROBE_PLUGINS", "").split(",").include?(name)
  end

  def self.configure(version)
    config = ProbeConfig.new
    yield config
    puts JSON.generate({ "version" => version, "global" => config.vm.to_h, "machines" => config.vm.machines })
  end
end

path = ARGV.fetch(0)
load File.expand_path(path)
